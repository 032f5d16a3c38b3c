//  placeholder until the supervisor lands
int main (void) { return 0; }
