"""Training one GAN: the loop (trainer.py) and its parts (the batch budget, checkpoints, guards,
D's regularisation, the step-row measurements, the random streams, set-up, the typed config, the
losses), and the recipe contract (recipe.py).  Knows nothing of Ray or of any recipe's maths."""
