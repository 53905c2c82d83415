"""wav2vec2 for CTC as a native Keras 3 model, in the layout of keras-hub's model folders:

- configuration: Wav2Vec2Config and the conv stack's frame rule (pure Python, no Keras);
- layers: the Keras layers (importing it registers them for keras.models.load_model);
- model: build_wav2vec2_for_ctc and helpers over a built or loaded model;
- convert_hf: Hugging Face checkpoints -> the Keras model (the only code that knows HF's weight names).

Importing this package imports none of them.
"""
