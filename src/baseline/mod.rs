//! Conventional codecs that medinr is measured against.

pub mod jpeg2000;
