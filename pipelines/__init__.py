"""xlcorpus jobs: configuration, pipelines composed from transforms, and the CLI."""
