"""Born-again distillation: teacher outputs, teacher annealing."""
