//! ane
