/* lmpack convert MODEL_DIR -o OUT.lmpk [options]: see convert/cli_main.h. */
#include "convert/cli_main.h"

int main(int argc, char **argv)
{
    return convert_main(argc, argv, "convert", 0);
}
