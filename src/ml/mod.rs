//! Machine learning core: loading shards, preprocessing, weak learners, metrics, model files.
//! No networking here.
