"""One fitter per model kind: it trains and saves a model folder that ``topictone.infer`` loads."""
