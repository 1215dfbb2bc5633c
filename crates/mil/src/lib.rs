//! malus-mil
