"""The weight-sharing GPT supernet of a search space and the data it is trained on."""
