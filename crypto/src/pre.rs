//! pre (being written)
