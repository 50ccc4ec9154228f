"""``python -m kanvision.train ...``: the same as ``kanvision-train`` (see kanvision.training.train)."""

from kanvision.training.train import main

if __name__ == "__main__":
    main()
