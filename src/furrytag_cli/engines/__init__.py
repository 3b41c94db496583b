"""Running a model on batches of images: the Keras and LiteRT engines and the choice between them."""
