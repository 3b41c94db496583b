"""Training a multi-head tagger on packed shards, with tf.distribute."""
