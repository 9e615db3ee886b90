"""Training half of the NCF recommender: read, train GMF/MLP/NeuMF, evaluate, export."""
