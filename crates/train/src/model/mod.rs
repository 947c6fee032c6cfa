//! Model configurations (being written).
