"""Single-photo body reconstruction (PIFu): training data, renderer, model, training, inference."""
