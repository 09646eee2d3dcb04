"""The one step pipeline: the train, test and predict steps and the compile options layered around them."""
