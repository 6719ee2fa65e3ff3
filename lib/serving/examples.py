"""Example reviews for a quick tryout (the Runs page buttons and the inference benchmark)."""
from __future__ import annotations

EXAMPLES = {
    "Loved it": "A warm, funny and beautifully acted film. I would happily watch it again.",
    "Hated it": "Two hours of my life I will never get back. Wooden acting and a plot full of holes.",
    "Mixed": "The first half drags and the dialogue is clumsy, but the ending is genuinely moving.",
    "Sarcastic": "Oh great, another superhero sequel. Exactly what the world needed. Truly groundbreaking.",
}
