"""One module or package per stage; ``xlcorpus.transforms.registry`` lists them."""
