"""Dead letters: the store the workers write to, and the search, operations, files and
formatting that the CLI and the console share."""
