def prompt(context):
    return "hi"
