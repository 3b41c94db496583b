"""Captions for training sets: tag names as people write them, caption rules, profiles."""
