"""The reasoning probe: propositional-logic problems with gold proofs, and the proof checker that grades them."""
