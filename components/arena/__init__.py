"""The arena's analysis, shared by serving (live leaderboard, ratings of the database) and the report (with the
benchmark results): Bradley-Terry ratings in two conventions, the published dataset's format, model names and
equivalences, and the paper's figures and tables."""
