"""The embedded mode's composition root and its outbound webhook poster."""
