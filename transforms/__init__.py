"""xlcorpus stages: one module per stage; readers and writers too."""
