"""What a model is: tag vocabulary, preprocessing, the network, bundles (native and legacy), thresholds."""
