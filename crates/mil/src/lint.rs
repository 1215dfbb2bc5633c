//! ANE lint (to be written).
