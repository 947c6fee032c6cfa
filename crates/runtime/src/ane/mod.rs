//! The Apple Neural Engine device (being written).
