"""Training one GAN: the loop, its checkpoints and guards, set-up, the typed config, the losses,
and the recipe contract. Knows nothing of Ray or of any recipe's maths."""
