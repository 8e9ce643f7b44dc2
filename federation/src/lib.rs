//! (being written on helper/avail)
