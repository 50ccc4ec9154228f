"""Small utilities shared across kanvision (FLOP counting, argument types, the console-script launcher).

Modules here import nothing from the rest of kanvision at module level, so any layer may use them.
"""
