"""The object world and the guidance model that ships with lumen3d.

`world` (objects from primitives in 12 kinds × 10 colours × 4 patterns, rendered with captions),
`model` (a word tokenizer, a small text transformer and a 64² pixel UNet), `diffusion` (its noise
schedule, loss and DDIM sampler), `guidance` (SDS with it: the default guidance without --model),
`judge` (a classifier of kind, colour and pattern, for evaluation only) and `weights` (the shipped
files). How the shipped weights were made: docs/MODEL_CARD.md.
"""
