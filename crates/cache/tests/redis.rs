//! The shared suite on a real Redis (127.0.0.1:6379), with the near cache in front (the default) and
//! without it.

mod common;

mod with_near_cache {
    use super::common;

    crate::suite!(common::redis);
}

mod without_near_cache {
    use super::common;

    crate::suite!(common::redis_without_near_cache);
}
