"""What the user configures: the assessment plan and the cost profiles, loaded and checked with located problems."""
