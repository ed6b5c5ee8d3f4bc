# placeholder: being written
classes = ()
