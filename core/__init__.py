"""The engine: model zoos, hyper-representation autoencoders, sampling. No Streamlit import anywhere here."""
