//! malus
