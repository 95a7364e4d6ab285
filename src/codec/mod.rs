//! The `.minr` file format: byte primitives, the section container and the
//! entropy coder of integer symbols. The byte-exact specification is
//! `docs/FORMAT.md`; keep the two in step.

pub mod bytes;
pub mod container;
pub mod entropy;
pub mod grid;

pub use container::FormatError;
pub mod payload;
pub mod quantize;
