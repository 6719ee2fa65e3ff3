"""Example reviews for a quick tryout (the Runs page buttons and the inference benchmark).

Written for this project in the style of the built-in reviews: a clear verdict each way, and three that a
word-counting model finds hard (praise with complaints, faint praise, sarcasm).
"""
from __future__ import annotations

EXAMPLES = {
    "Loved it": "A warm, funny and beautifully acted film. I would happily watch it again.",
    "Hated it": "Two hours of my life I will never get back. Wooden acting and a plot full of holes.",
    "Mixed": "The first half drags and the dialogue is clumsy, but the last twenty minutes are so moving that "
             "I forgave all of it. Seven out of ten.",
    "Faint praise": "Perfectly watchable, I suppose. Nice scenery, a competent cast, and I had forgotten the "
                    "plot by the time I got home. 5/10.",
    "Sarcastic": "Oh great, another superhero sequel. Exactly what the world needed. Truly groundbreaking.",
}
