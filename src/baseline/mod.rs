//! Conventional codecs that medinr is measured against.

#[cfg(feature = "jpeg2000")]
pub mod jpeg2000;
#[cfg(feature = "sz3")]
pub mod sz3;
