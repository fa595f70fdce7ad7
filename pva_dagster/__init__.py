"""pva-dagster: does a language model know whether the code it writes is correct?"""
