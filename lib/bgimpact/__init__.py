"""bgimpact: how much does the background steer an ImageNet classifier?"""

__version__ = "0.1.0"
