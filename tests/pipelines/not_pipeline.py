print("this script never touches Ray Data")
