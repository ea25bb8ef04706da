"""Pure selection: scores + a sparsity rule -> keep-masks or kept indices."""
