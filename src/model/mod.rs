//! Backbones, weight loading and the CDO expert/apprentice pair.
