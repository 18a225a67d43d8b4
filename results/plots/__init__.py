"""Offline Plotly pages: Pareto plots of a trial table and the pages of a run log
(alphas, losses, training curves), each as a data half and a rendering half."""
