"""Export: the dygraph inference model to a static program plus its manifest."""
