//! What responses are made of: the list's JSON body in the vendor's key order (`body`), its
//! times (`wall_clock`), its content coding (`encoding`) and its validator (`etag`); and the
//! reference's files, each compressed once (`asset`).

pub mod asset;
pub mod body;
pub mod encoding;
pub mod etag;
pub mod wall_clock;
