"""A run, as every room that trains, samples, evaluates, analyses or exports it sees it: the
denoiser assembled from a recipe (assemble.py), the recipe's data in its [latents]
(training_data.py), the checkpoint format and its sealed state (checkpoint.py,
state_record.py, weights_file.py), the run's log (run_logger.py) and the processes it runs on
(runtime.py). It sits below train, eval, analysis and interop, so none of those imports
another to reach a run."""
