//! Device kernel generators (being written).
