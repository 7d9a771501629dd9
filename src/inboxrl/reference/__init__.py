"""The scripted reference agent (is the task solvable?) and its evaluation; it also gives the SFT demonstrations."""
