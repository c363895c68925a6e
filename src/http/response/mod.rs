//! What the list responses are made of: the JSON body in the vendor's key order (`body`), its
//! times (`wall_clock`), its content coding (`encoding`) and its validator (`etag`).

pub mod body;
pub mod encoding;
pub mod etag;
pub mod wall_clock;
