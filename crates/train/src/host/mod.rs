//! Host ops (being written).
