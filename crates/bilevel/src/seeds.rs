//! Seeded randomness. One master seed derives independent named streams (data, start points,
//! mini-batches), each a ChaCha8 generator whose output does not change between versions.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Purpose of a random stream derived from a master seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Problem data (instances, label noise).
    Data,
    /// Start points.
    Init,
    /// Mini-batches and other randomness inside a run.
    Run,
}

/// The generator of stream `stream` for master seed `seed`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(match stream {
        Stream::Data => 1,
        Stream::Init => 2,
        Stream::Run => 3,
    });
    r
}
